import sys

from writer.cli import main

# The guard matters: worker processes are spawned and re-import the main module.
if __name__ == "__main__":
    sys.exit(main())
