import sys

from dspfx.cli import main

sys.exit(main())
