"""capi-pipeline: warehouse conversions to Meta's Conversions API, validated, hashed, delivered exactly once.

The library never imports Airflow. `capi_pipeline.pipeline` holds the stage functions that the CLI and the DAGs
call; each other module is one stage (see README "Architecture").
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
