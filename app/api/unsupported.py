"""What /scim/v2 does not serve: /Me (501), and paths that match no route (404, 405).

Each is answered only after the bearer check, as the routes are: a caller without a valid token
learns nothing about which paths exist, and the rate limit counts it (auth.is_scim_request), so
that guessing tokens on a path that does not exist is limited too. None is audited: nothing was
changed.
"""

from typing import NoReturn

from flask import Blueprint, request

from app import auth
from app.errors import NotSupported

bp = Blueprint("unsupported", __name__)

# Any method: HEAD and OPTIONS too, which Flask would otherwise answer by itself.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/Me", methods=METHODS)
def me() -> NoReturn:
    raise NotSupported(
        "/Me is not supported: this service does not map a bearer token to a User "
        "(RFC 7644 §3.11); use /Users/{id}"
    )


@bp.before_app_request
def check_bearer_on_paths_without_a_route() -> None:
    """The bearer check of the /scim/v2 blueprint, for a path under it that matches no route.

    Registered with the blueprints, after ratelimit.init_app: the rate limit counts first, as
    for the routes. Werkzeug's 404 (or 405, with Allow) follows for a caller with a valid token.
    """
    if request.url_rule is None and auth.is_scim_request():
        auth.require_bearer()
