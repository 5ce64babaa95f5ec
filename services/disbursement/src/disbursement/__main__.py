import sys

from disbursement.spec import SPEC
from shared.service import main

sys.exit(main(SPEC))
