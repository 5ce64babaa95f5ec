import sys

from eligibility.spec import SPEC
from shared.service import main

sys.exit(main(SPEC))
