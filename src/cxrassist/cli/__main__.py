"""``python -m cxrassist.cli`` (used by torchrun)."""

from cxrassist.cli import main

main()
