"""Command-line interface: ``lungcad <command>``. Each command is a thin parser over an importable function."""
