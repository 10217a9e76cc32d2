import sys

from ouroboros.cli import main

sys.exit(main())
