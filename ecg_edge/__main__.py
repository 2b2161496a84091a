import sys

from ecg_edge.cli import main

sys.exit(main())
