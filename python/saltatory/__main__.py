"""`python -m saltatory` runs the main training job (see saltatory.train)."""

from .train import main

main()
