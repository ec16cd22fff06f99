"""Stage 6, false-positive reduction: a WideResNet scores each candidate patch."""
