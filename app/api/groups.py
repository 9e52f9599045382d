"""Groups views: arrive with the Groups issue; the blueprint is wired so the URL space is fixed."""

from flask import Blueprint

bp = Blueprint("groups", __name__, url_prefix="/Groups")
