"""GET an HTTPS URL verifying the server against a CA file; print JSON {status, headers, body}.

usage: https_get.py URL CA_FILE [BEARER_TOKEN]

The CA must verify the serving certificate for the URL's host (IP SANs included): this is
how the end-to-end tests check that admin.kubeconfig's CA really anchors the server.
"""
import json
import ssl
import sys
import urllib.error
import urllib.request


def main() -> int:
    url, ca_file = sys.argv[1], sys.argv[2]
    token = sys.argv[3] if len(sys.argv) > 3 else None
    context = ssl.create_default_context(cafile=ca_file)  # verifies chain and hostname
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            status, headers, body = response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
    print(json.dumps({"status": status, "headers": headers, "body": body.decode("utf-8", "replace")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
