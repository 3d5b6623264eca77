"""The recommendation endpoint (issue 6): `build_app(args) -> Application`.

    serve run serve_apps/config.yaml                 # this machine (Ray starts embedded)
    serve deploy serve_apps/config.yaml              # a running cluster (ray start / ray up)
    serve run serve_apps.recommender:build_app model_uri=models:/sidrec-lamia-beauty@candidate

The deployment, its arguments (`AppArgs`) and runtime knobs (`RuntimeKnobs`)
live in `sidrec.serving.app`, so replicas import them from the installed
package; the decode itself is `sidrec.serving.engine`. API, limits and knobs:
see `sidrec.serving.app` or GET /docs on the running app.
"""

from sidrec.serving.app import AppArgs, Recommender, RuntimeKnobs, build_app

__all__ = ["AppArgs", "Recommender", "RuntimeKnobs", "build_app"]
