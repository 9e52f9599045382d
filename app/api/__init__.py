"""The /scim/v2 parent blueprint: the bearer check in front of every SCIM route."""

from flask import Blueprint

from app import auth
from app.api import discovery, groups, openapi, search, unsupported, users

scim = Blueprint("scim", __name__, url_prefix="/scim/v2")
scim.before_request(auth.require_bearer)  # every SCIM route, discovery included
for child in (users.bp, groups.bp, search.bp, discovery.bp, openapi.bp, unsupported.bp):
    scim.register_blueprint(child)
