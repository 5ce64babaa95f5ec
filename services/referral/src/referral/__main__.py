import sys

from referral.spec import SPEC
from shared.service import main

sys.exit(main(SPEC))
