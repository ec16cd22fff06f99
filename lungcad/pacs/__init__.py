"""Read studies from a PACS and write results back: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with ``dicomweb-client``.

Needs the optional dependencies: ``pip install 'lungcad[pacs]'``.
"""

from lungcad.pacs.dicomweb import detect_studies

__all__ = ["detect_studies"]
