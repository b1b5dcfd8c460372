"""`python -m capi_pipeline` is the `capi-pipeline` command."""

from capi_pipeline.cli import main

raise SystemExit(main())
