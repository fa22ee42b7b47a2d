"""python -m vidcap.cli"""

import sys

from vidcap.cli import main

sys.exit(main())
