"""Training of the fpr stage."""
