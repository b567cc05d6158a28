import sys

from gnnmd.cli import main

sys.exit(main())
