"""Trust: client JWT verification, trusted issuers, remote key sets, token minting; the sandbox"s key set.
"""

from .issuers import Issuer, load_issuers
from .tokens import mint
from .verifier import Claims, Unauthorized, Verifier

__all__ = ["Issuer", "load_issuers", "mint", "Claims", "Unauthorized", "Verifier"]
