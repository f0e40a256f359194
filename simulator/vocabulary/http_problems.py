"""Problem-details answers (RFC 9457) for the aiohttp servers: the stub and the pull API."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from simulator.vocabulary.codes.refusals import INTERNAL, METHOD_NOT_ALLOWED, NOT_FOUND
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE, problem

log = logging.getLogger(__name__)


def problem_response(code: str, detail: str, **extra: object) -> web.Response:
    """The answer for the problem ``code`` (simulator.vocabulary.problems.PROBLEMS)."""
    status, body = problem(code, detail, **extra)
    return web.Response(status=status, body=body, content_type=PROBLEM_MEDIA_TYPE)


def problems_middleware(*, endpoint: str, internal: str) -> Middleware:
    """Every refusal is a problem document, aiohttp's own and unexpected failures too.

    ``endpoint`` is named in a 404; ``internal`` is the detail of a 500, whose
    cause goes to the log and never into the answer.
    """

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            _log_refusal(request, NOT_FOUND, f"nothing at {request.path!r}")
            return problem_response(NOT_FOUND, f"nothing at {request.path}; see {endpoint}")
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            _log_refusal(request, METHOD_NOT_ALLOWED, f"{request.method!r} {request.path!r}")
            return problem_response(METHOD_NOT_ALLOWED, f"use {allowed}")
        except web.HTTPException:
            raise
        except B2BSimError as exc:
            log.warning("internal error code=%s detail=%s", exc.code, exc)
            return problem_response(INTERNAL, internal)
        except Exception:
            log.exception("internal error")
            return problem_response(INTERNAL, internal)

    return problems


def _log_refusal(request: web.Request, code: str, detail: str) -> None:
    """One INFO line for a request the router refused (the server's own refusals log theirs)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport else None
    log.info(
        "refused code=%s port=%s peer=%s: %s",
        code,
        sockname[1] if sockname else None,
        transport.get_extra_info("peername") if transport else None,
        detail,
    )
