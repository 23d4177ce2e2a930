"""Reading FHIR: the patient record, the model library (``models``, the one ``fhir.resources``
import), the guarded FHIR client, terminology and value sets, in-memory search and Bundle files.
"""

from .bundles import patients, resolve_dates
from .client import FetchError, FhirClient
from .record import Record
from .terminology import CPT, ICD10CM, LOINC, RXNORM, SNOMED, UCUM, valueset

__all__ = ["patients", "resolve_dates", "FetchError", "FhirClient", "Record", "CPT", "ICD10CM", "LOINC", "RXNORM",
           "SNOMED", "UCUM", "valueset"]
