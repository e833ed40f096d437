"""outbox stage."""
