"""journeys stage."""
