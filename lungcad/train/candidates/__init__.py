"""Training of the candidates stage."""
