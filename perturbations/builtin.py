"""Built-in perturbations (placeholder until the perturbation issue lands)."""
