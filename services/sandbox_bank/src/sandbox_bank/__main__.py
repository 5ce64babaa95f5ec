import sys

from sandbox_bank.app import main

sys.exit(main())
