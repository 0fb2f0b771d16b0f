"""The official Python `kubernetes` client against `tokenwarden serve`, unchanged.

usage: KUBECONFIG=.../admin.kubeconfig client_test.py [NAMESPACE | --tokens-only]

--tokens-only drives only TokenRequest, TokenReview and SelfSubjectReview, on the
bootstrap ServiceAccount default/default (no object CRUD, watch or delete).

Prints one line per check (`ok - ...` / `FAIL - ...`) and exits 1 if any check failed.
Independent checks keep running after a failure so one run shows everything that is wrong.
"""
import json
import os
import ssl
import sys
import threading
import time
import traceback
import urllib.request

import jwt
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

FAILURES = []


def check(name, condition, detail=""):
    if condition:
        print(f"ok - {name}", flush=True)
    else:
        FAILURES.append(name)
        print(f"FAIL - {name}: {detail}", flush=True)
    return condition


def step(name, fn):
    """Runs fn(); an exception fails the check `name` and returns None."""
    try:
        result = fn()
        print(f"ok - {name}", flush=True)
        return result
    except Exception as err:  # noqa: BLE001 - report everything as a failed check
        detail = f"{type(err).__name__}: {err}"
        if isinstance(err, ApiException):
            detail = f"ApiException {err.status} {err.reason}: {err.body}"
        FAILURES.append(name)
        print(f"FAIL - {name}: {detail}", flush=True)
        traceback.print_exc(file=sys.stderr)
        return None


def api_client_with_token(base, token):
    """A client for the same server and CA authenticating with `token`."""
    cfg = client.Configuration()
    cfg.host = base.host
    cfg.ssl_ca_cert = base.ssl_ca_cert
    cfg.verify_ssl = True
    cfg.api_key = {"BearerToken": f"Bearer {token}", "authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def https_get_json(cfg, path):
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    request = urllib.request.Request(cfg.host + path)
    request.add_header("Authorization", cfg.api_key.get("BearerToken") or cfg.api_key["authorization"])
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.loads(response.read())


def main():
    tokens_only = sys.argv[1:] == ["--tokens-only"]
    ns = "default" if tokens_only else (sys.argv[1] if len(sys.argv) > 1 else "pyclient")
    sa_name = "default" if tokens_only else "api-consumer-1"
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    cfg = client.Configuration.get_default_copy()
    check("kubeconfig loaded: https server with a CA file", cfg.host.startswith("https://127.0.0.1:") and bool(cfg.ssl_ca_cert), cfg.host)
    core = client.CoreV1Api()
    authn = client.AuthenticationV1Api()

    uid = None
    if not tokens_only:
        # --- Namespace and ServiceAccount CRUD ---
        created_ns = step("create namespace", lambda: core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))))
        if created_ns is not None:
            check("create namespace returns it", created_ns.metadata.name == ns and bool(created_ns.metadata.uid), created_ns.metadata)

        sa = step(
            "create_namespaced_service_account",
            lambda: core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa_name, labels={"app": "talker"}))),
        )
        if sa is None:
            print("cannot continue without a ServiceAccount", flush=True)
            return 1
        uid = sa.metadata.uid
        check("created ServiceAccount has name, namespace, uid, resourceVersion",
              sa.metadata.name == sa_name and sa.metadata.namespace == ns and len(uid or "") == 36 and bool(sa.metadata.resource_version),
              sa.metadata)

        got = step("read_namespaced_service_account", lambda: core.read_namespaced_service_account(sa_name, ns))
        if got is not None:
            check("read returns the same uid and labels", got.metadata.uid == uid and got.metadata.labels == {"app": "talker"}, got.metadata)

        listed = step("list_namespaced_service_account", lambda: core.list_namespaced_service_account(ns))
        if listed is not None:
            names = sorted(item.metadata.name for item in listed.items)
            check("list has the new SA and the namespace's default SA", names == sorted([sa_name, "default"]), names)
            check("list has a resourceVersion", bool(listed.metadata.resource_version), listed.metadata)

        selected = step("list with labelSelector", lambda: core.list_namespaced_service_account(ns, label_selector="app=talker"))
        if selected is not None:
            check("labelSelector app=talker selects only the new SA", [i.metadata.name for i in selected.items] == [sa_name], selected.items)

        patched = step(
            "patch_namespaced_service_account",
            lambda: core.patch_namespaced_service_account(sa_name, ns, {"metadata": {"labels": {"team": "a"}}}),
        )
        if patched is not None:
            check("patch merged the label", patched.metadata.labels == {"app": "talker", "team": "a"}, patched.metadata.labels)
            check("patch changed the resourceVersion, kept the uid",
                  patched.metadata.uid == uid and patched.metadata.resource_version != sa.metadata.resource_version, patched.metadata)

    # --- TokenRequest ---
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=["talker-api"], expiration_seconds=600))
    issued = step("create_namespaced_service_account_token", lambda: core.create_namespaced_service_account_token(sa_name, ns, request))
    token = None
    if issued is not None:
        token = issued.status.token
        check("TokenRequest echoes the spec", issued.spec.audiences == ["talker-api"] and issued.spec.expiration_seconds == 600, issued.spec)
        check("TokenRequest status has a token and an expirationTimestamp", bool(token) and issued.status.expiration_timestamp is not None, issued.status)
        # Verify the signature independently with PyJWT against the server's JWKS.
        jwks = step("GET /openid/v1/jwks", lambda: https_get_json(cfg, "/openid/v1/jwks"))
        if jwks is not None:
            def verify():
                header = jwt.get_unverified_header(token)
                key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
                return jwt.decode(token, jwt.PyJWK(key).key, algorithms=[key["alg"]], audience="talker-api", issuer=cfg.host)
            claims = step("PyJWT verifies the token with the JWKS", verify)
            if claims is not None:
                uid = uid or claims["kubernetes.io"]["serviceaccount"]["uid"]
                check("claims: sub, exp - iat == 600, serviceaccount uid",
                      claims["sub"] == f"system:serviceaccount:{ns}:{sa_name}" and claims["exp"] - claims["iat"] == 600
                      and claims["kubernetes.io"]["serviceaccount"]["uid"] == uid, claims)
                expiration = issued.status.expiration_timestamp.timestamp()
                check("status.expirationTimestamp is iat + 600", abs(expiration - (claims["iat"] + 600)) <= 1, (expiration, claims["iat"]))

    # --- TokenReview ---
    def review(tok, audiences):
        return authn.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=tok, audiences=audiences)))

    if token:
        reviewed = step("create_token_review", lambda: review(token, ["talker-api"]))
        if reviewed is not None:
            st = reviewed.status
            check("review: authenticated", st.authenticated is True, st)
            check("review: user", st.user.username == f"system:serviceaccount:{ns}:{sa_name}" and st.user.uid == uid
                  and st.user.groups == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"], st.user)
            check("review: audiences", st.audiences == ["talker-api"], st.audiences)
        wrong = step("create_token_review (other audience)", lambda: review(token, ["other"]))
        if wrong is not None:
            check("review for another audience is not authenticated",
                  not wrong.status.authenticated and "is invalid for the target audiences" in (wrong.status.error or ""), wrong.status)

    # --- SelfSubjectReview ---
    me = step("create_self_subject_review (admin)", lambda: authn.create_self_subject_review(client.V1SelfSubjectReview()))
    if me is not None:
        check("admin is tokenwarden-admin", me.status.user_info.username == "tokenwarden-admin"
              and "system:masters" in (me.status.user_info.groups or []), me.status)
    api_token = step("create token for the API audience",
                     lambda: core.create_namespaced_service_account_token(sa_name, ns, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec())).status.token)
    if api_token:
        sa_authn = client.AuthenticationV1Api(api_client_with_token(cfg, api_token))
        me = step("create_self_subject_review (ServiceAccount)", lambda: sa_authn.create_self_subject_review(client.V1SelfSubjectReview()))
        if me is not None:
            check("the ServiceAccount sees itself", me.status.user_info.username == f"system:serviceaccount:{ns}:{sa_name}"
                  and me.status.user_info.uid == uid, me.status)
        sa_core = client.CoreV1Api(api_client_with_token(cfg, api_token))
        try:
            sa_core.list_namespaced_service_account(ns)
            check("a ServiceAccount may not list ServiceAccounts", False, "the list succeeded")
        except ApiException as err:
            check("a ServiceAccount may not list ServiceAccounts (403)", err.status == 403 and
                  f'User \\"system:serviceaccount:{ns}:{sa_name}\\" cannot list resource \\"serviceaccounts\\"' in (err.body or ""),
                  f"{err.status} {err.body}")

    if not tokens_only:
        # --- Pods: ServiceAccount admission, the status a new pod starts with, a bound token ---
        resources = client.V1ResourceRequirements(limits={"cpu": "250m", "memory": "64Mi"})
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name="worker"),
                           spec=client.V1PodSpec(service_account_name=sa_name, containers=[client.V1Container(name="c", image="busybox", resources=resources)]))
        created_pod = step("create_namespaced_pod", lambda: core.create_namespaced_pod(ns, pod))
        if created_pod is not None:
            check("a new pod is Pending, Guaranteed, with requests from its limits",
                  created_pod.status.phase == "Pending" and created_pod.status.qos_class == "Guaranteed"
                  and created_pod.spec.containers[0].resources.requests == {"cpu": "250m", "memory": "64Mi"}, created_pod.status)
            bound = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                audiences=["talker-api"], bound_object_ref=client.V1BoundObjectReference(kind="Pod", api_version="v1", name="worker")))
            pod_token = step("create a token bound to the pod", lambda: core.create_namespaced_service_account_token(sa_name, ns, bound).status.token)
            if pod_token:
                reviewed = step("review the pod-bound token", lambda: review(pod_token, ["talker-api"]))
                if reviewed is not None:
                    check("the review names the pod", reviewed.status.user.extra.get("authentication.kubernetes.io/pod-name") == ["worker"]
                          and reviewed.status.user.extra.get("authentication.kubernetes.io/pod-uid") == [created_pod.metadata.uid], reviewed.status)
        stranger = client.V1Pod(metadata=client.V1ObjectMeta(name="stranger"),
                                spec=client.V1PodSpec(service_account_name="nobody", containers=[client.V1Container(name="c", image="busybox")]))
        try:
            core.create_namespaced_pod(ns, stranger)
            check("a pod of a missing ServiceAccount is refused", False, "it was created")
        except ApiException as err:
            body = json.loads(err.body or "{}")
            check("a pod of a missing ServiceAccount is refused (403)", err.status == 403 and body.get("message") ==
                  f'pods "stranger" is forbidden: error looking up service account {ns}/nobody: serviceaccount "nobody" not found',
                  f"{err.status} {err.body}")

        # --- Watch: ADDED, MODIFIED, DELETED from another thread ---
        start = step("list before watching", lambda: core.list_namespaced_service_account(ns))
        if start is not None:
            watched = "watched"
            errors = []

            def mutate():
                try:
                    time.sleep(1)
                    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=watched)))
                    core.patch_namespaced_service_account(watched, ns, {"metadata": {"labels": {"step": "2"}}})
                    core.delete_namespaced_service_account(watched, ns)
                except Exception as err:  # noqa: BLE001
                    errors.append(err)

            seen = []
            w = watch.Watch()
            thread = threading.Thread(target=mutate)
            thread.start()

            def stream():
                for event in w.stream(core.list_namespaced_service_account, ns, resource_version=start.metadata.resource_version, timeout_seconds=20):
                    obj = event["object"]
                    seen.append((event["type"], obj.metadata.name, (obj.metadata.labels or {}).get("step")))
                    if event["type"] == "DELETED" and obj.metadata.name == watched:
                        w.stop()

            step("watch stream", stream)
            thread.join()
            check("changes from the other thread succeeded", not errors, errors)
            mine = [(t, step_label) for (t, name, step_label) in seen if name == watched]
            check("watch saw ADDED, MODIFIED, DELETED in order", [t for t, _ in mine] == ["ADDED", "MODIFIED", "DELETED"], seen)
            check("the MODIFIED event carries the new label", ("MODIFIED", "2") in mine, seen)

        # --- Delete ---
        deleted = step("delete_namespaced_service_account", lambda: core.delete_namespaced_service_account(sa_name, ns))
        if deleted is not None:
            # The OpenAPI response type is V1ServiceAccount; the client returns the deleted object.
            name = getattr(getattr(deleted, "metadata", None), "name", None)
            check("delete returns the deleted ServiceAccount", name == sa_name and deleted.metadata.uid == uid, deleted)
        try:
            core.read_namespaced_service_account(sa_name, ns)
            check("read after delete is 404", False, "still there")
        except ApiException as err:
            body = json.loads(err.body or "{}")
            check("read after delete is 404 NotFound", err.status == 404 and body.get("reason") == "NotFound"
                  and body.get("message") == f'serviceaccounts "{sa_name}" not found', f"{err.status} {err.body}")
        if token:
            reviewed = step("create_token_review after delete", lambda: review(token, ["talker-api"]))
            if reviewed is not None:
                check("the deleted SA's token fails review", not reviewed.status.authenticated
                      and reviewed.status.error == f'[invalid bearer token, serviceaccounts "{sa_name}" not found]', reviewed.status)

    print(f"{len(FAILURES)} failed" if FAILURES else "all checks passed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
