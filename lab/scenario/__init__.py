"""A lab run: its context, its units, their sequences, and the runner that steps them."""
