"""Feature dashboards for latents of any model family on harvested LM activations."""
