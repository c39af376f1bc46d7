"""Desktop FT: fine-tune a language model on your own workstation, and see that it worked."""

__version__ = "0.1.0"
