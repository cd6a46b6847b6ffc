"""``python -m cellbus_allinone``: the same as ``cellbus serve``."""

from .serve import main

if __name__ == "__main__":
    main()
