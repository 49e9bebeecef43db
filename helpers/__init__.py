"""ATS endpoint investigation kit: trust bundles, chains, the offline lab, endpoints and reports.

Import the modules you need: ``from helpers import bundles, chains, lab, endpoints``.
"""

__version__ = "0.1.0"
__all__ = ["bundles", "chains", "lab", "endpoints", "report", "cli"]
