"""Training of the risk stage."""
