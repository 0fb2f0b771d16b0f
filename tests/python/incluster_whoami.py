"""An in-cluster workload, configured by nothing but the official client's in-cluster loader.

Usage: incluster_whoami.py TOKEN_DIR

The client reads its token and CA from the files its own settings name
(kubernetes.config.incluster_config.SERVICE_TOKEN_FILENAME / SERVICE_CERT_FILENAME, which a
Pod finds under /var/run/secrets/kubernetes.io/serviceaccount); here they point into
TOKEN_DIR, the layout `tokenwarden project --dir` writes. The API server's address comes from
KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, as in a Pod. Prints the username the
server sees, from a SelfSubjectReview.
"""

import sys

from kubernetes import client, config
from kubernetes.config import incluster_config


def main():
    token_dir = sys.argv[1]
    incluster_config.SERVICE_TOKEN_FILENAME = f"{token_dir}/token"
    incluster_config.SERVICE_CERT_FILENAME = f"{token_dir}/ca.crt"
    config.load_incluster_config()
    review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
    print(review.status.user_info.username)
    print(" ".join(review.status.user_info.groups or []))


if __name__ == "__main__":
    main()
