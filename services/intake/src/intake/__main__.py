import sys

from intake.spec import SPEC
from shared.service import main

sys.exit(main(SPEC))
