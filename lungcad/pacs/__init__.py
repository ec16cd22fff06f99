"""Read studies from a PACS and write results back: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with ``dicomweb-client``
(:mod:`lungcad.pacs.dicomweb`), and a DICOM node (C-STORE, C-ECHO) with ``pynetdicom`` (:mod:`lungcad.pacs.node`).

Needs the optional dependencies: ``pip install 'lungcad[pacs]'``.
"""

from lungcad.pacs.dicomweb import detect_studies
from lungcad.pacs.node import DicomNode, Peer, serve

__all__ = ["DicomNode", "Peer", "detect_studies", "serve"]
