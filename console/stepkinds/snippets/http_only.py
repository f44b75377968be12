"""Only http and https are fetched: urllib would also open file: (the worker's own files, such
as /proc/self/environ) and ftp: URLs, and a URL may come from a run's input."""

import urllib.request

# -------------------- snippet: the code below is copied into steps


def only_http(request):
    """The request, if urllib sends it over http or https (never file:, ftp: or data:)."""
    if request.type not in ("http", "https"):
        raise ValueError(f"only http and https URLs are allowed: {request.full_url}")
    return request


class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another http or https URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        only_http(urllib.request.Request(newurl))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(request, timeout):
    """urllib.request.urlopen for http and https URLs only, redirects included."""
    opener = urllib.request.build_opener(HttpOnlyRedirects)
    return opener.open(only_http(request), timeout=timeout)
