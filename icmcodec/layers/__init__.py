"""Building blocks shared by several methods (no coding logic): Swin layers with prompts."""
