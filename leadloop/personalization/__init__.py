"""personalization stage."""
