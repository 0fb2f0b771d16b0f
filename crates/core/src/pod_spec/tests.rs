//! The spec rules of [`super`], each with kube's exact messages.

use serde_json::json;

use super::*;
use crate::pod::decode_and_default;

/// The errors for `spec`, decoded and defaulted as a create sends it.
fn errors_of(spec: Value) -> Vec<String> {
    errors_of_pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
}

fn errors_of_pod(pod: Value) -> Vec<String> {
    let mut pod = Object::from_value(pod).unwrap();
    decode_and_default(&mut pod).unwrap();
    validate(&pod).iter().map(ToString::to_string).collect()
}

/// A spec with one valid container, `container` merged into it.
fn with_container(container: Value) -> Value {
    let mut base = json!({"name": "app", "image": "busybox"});
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, container) {
        base.extend(extra);
    }
    json!({"containers": [base]})
}

const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn a_full_valid_pod_passes() {
    let spec = json!({
        "serviceAccountName": "bot", "nodeName": "node-1.example", "hostname": "web", "subdomain": "svc",
        "activeDeadlineSeconds": 600, "restartPolicy": "OnFailure", "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]},
        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "creds", "secret": {"secretName": "creds"}}],
        "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["true"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                           {"name": "sidecar", "image": "envoy", "restartPolicy": "Always", "livenessProbe": {"tcpSocket": {"port": 80}}}],
        "containers": [{
            "name": "app", "image": "registry.example:5000/app@sha256:abc", "imagePullPolicy": "Never",
            "ports": [{"name": "http", "containerPort": 8080, "hostPort": 80}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"containerPort": 9090}],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "my.env-name with spaces", "value": "x"},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "app"}, {"name": "token", "mountPath": "/var/run/token", "readOnly": true, "recursiveReadOnly": "IfPossible"}],
            "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi", "hugepages-2Mi": "4Mi"}},
        }, {"name": "second", "image": "busybox", "ports": [{"name": "http", "containerPort": 8081, "hostPort": 81}]}],
    });
    assert_eq!(errors_of(spec), Vec::<String>::new());
    // A bare pod with one container is valid too.
    assert_eq!(errors_of(with_container(json!({}))), Vec::<String>::new());
}

#[test]
fn a_pod_needs_containers_with_names_and_images() {
    assert_eq!(errors_of(json!({})), ["spec.containers: Required value"]);
    assert_eq!(errors_of(json!({"containers": []})), ["spec.containers: Required value"]);
    assert_eq!(errors_of(json!({"containers": [{}]})), ["spec.containers[0].name: Required value", "spec.containers[0].image: Required value"]);
    assert_eq!(errors_of(with_container(json!({"image": ""}))), ["spec.containers[0].image: Required value"]);
    assert_eq!(errors_of(with_container(json!({"name": "Web_1"}))), [format!(r#"spec.containers[0].name: Invalid value: "Web_1": {LABEL}"#)]);
    assert_eq!(errors_of(with_container(json!({"name": "a.b"}))), [r#"spec.containers[0].name: Invalid value: "a.b": must not contain dots"#]);
    // Whitespace around an image is refused after the rest of the spec; an image of spaces is
    // not empty to kube.
    assert_eq!(
        errors_of(json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": " busybox"}]})),
        [
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            r#"spec.containers[0].image: Invalid value: " busybox": must not have leading or trailing whitespace"#,
        ]
    );
    assert_eq!(errors_of(with_container(json!({"image": "  "}))), [r#"spec.containers[0].image: Invalid value: "  ": must not have leading or trailing whitespace"#]);
    // Not a list, or an item that is not an object: read as kube's decoder would not, but
    // without a panic.
    assert_eq!(errors_of(json!({"containers": "app"})), ["spec.containers: Required value"]);
    assert_eq!(errors_of(json!({"containers": [7]})), ["spec.containers[0].name: Required value", "spec.containers[0].image: Required value", "spec.containers[0].terminationMessagePolicy: Required value", "spec.containers[0].imagePullPolicy: Required value"]);
}

#[test]
fn container_names_are_unique_across_containers_and_init_containers() {
    let spec = json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}],
                      "initContainers": [{"name": "a", "image": "x"}, {"name": "i", "image": "x"}, {"name": "i", "image": "x"}]});
    assert_eq!(
        errors_of(spec),
        [r#"spec.containers[1].name: Duplicate value: "a""#, r#"spec.initContainers[0].name: Duplicate value: "a""#, r#"spec.initContainers[2].name: Duplicate value: "i""#]
    );
    let init = json!({"containers": [{"name": "a", "image": "x"}], "initContainers": [{"image": ""}]});
    assert_eq!(errors_of(init), ["spec.initContainers[0].name: Required value", "spec.initContainers[0].image: Required value"]);
}

#[test]
fn policies_take_kubes_values() {
    assert_eq!(
        errors_of(with_container(json!({"imagePullPolicy": "Sometimes"}))),
        [r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#]
    );
    assert_eq!(
        errors_of(with_container(json!({"terminationMessagePolicy": "Log"}))),
        [r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Log": supported values: "File", "FallbackToLogsOnError""#]
    );
    let mut spec = with_container(json!({}));
    spec["dnsPolicy"] = json!("Cluster");
    assert_eq!(
        errors_of(spec),
        [r#"spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#]
    );
    let mut none = with_container(json!({}));
    none["dnsPolicy"] = json!("None");
    assert_eq!(errors_of(none.clone()), ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]);
    none["dnsConfig"] = json!({"searches": ["a.example"]});
    assert_eq!(errors_of(none), ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"]);
    // Only init containers may restart Always.
    assert_eq!(errors_of(with_container(json!({"restartPolicy": "Always"}))), ["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]);
    let init = |extra: Value| {
        let mut spec = with_container(json!({}));
        let mut container = json!({"name": "init", "image": "x"});
        if let (Value::Object(c), Value::Object(extra)) = (&mut container, extra) {
            c.extend(extra);
        }
        spec["initContainers"] = json!([container]);
        errors_of(spec)
    };
    assert_eq!(init(json!({"restartPolicy": "Never"})), [r#"spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#]);
    assert_eq!(
        init(json!({"livenessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {}})),
        [
            "spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        ]
    );
    assert_eq!(init(json!({"restartPolicy": "Always", "livenessProbe": {"exec": {"command": ["true"]}}})), Vec::<String>::new());
}

#[test]
fn ports_follow_kubes_rules() {
    let ports = |ports: Value| errors_of(with_container(json!({"ports": ports})));
    assert_eq!(ports(json!([{}])), ["spec.containers[0].ports[0].containerPort: Required value"]);
    assert_eq!(
        ports(json!([{"containerPort": 70000, "hostPort": -1, "protocol": "HTTP"}])),
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
            r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
        ]
    );
    assert_eq!(
        ports(json!([{"name": "-Web--too-long-name", "containerPort": 80}])),
        [
            r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must be no more than 15 characters"#,
            r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must not contain consecutive hyphens"#,
            r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must not begin or end with a hyphen"#,
        ]
    );
    assert_eq!(ports(json!([{"name": "8080", "containerPort": 80}])), [r#"spec.containers[0].ports[0].name: Invalid value: "8080": must contain at least one letter (a-z)"#]);
    assert_eq!(
        ports(json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}])),
        [r#"spec.containers[0].ports[1].name: Duplicate value: "http""#]
    );
    // Host ports are unique per protocol and IP across the containers; each init container
    // runs alone.
    let spec = json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "hostPort": 8080, "protocol": "UDP"}]},
                                     {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}],
                      "initContainers": [{"name": "i", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    assert_eq!(errors_of(spec), [r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#]);
    // Within one init container a host port twice is a conflict, named at index 0 as kube
    // names it (it checks each init container as a list of one).
    let init = json!({"containers": [{"name": "a", "image": "x"}],
                      "initContainers": [{"name": "i", "image": "x"}, {"name": "j", "image": "x", "ports": [{"containerPort": 80, "hostPort": 9090}, {"containerPort": 81, "hostPort": 9090}]}]});
    assert_eq!(errors_of(init), [r#"spec.initContainers[0].ports[1].hostPort: Duplicate value: "TCP//9090""#]);
    // On the host's network a host port is the container port (the defaults fill it in).
    let host = json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]}]});
    assert_eq!(errors_of(host), ["spec.containers[0].ports[1].hostPort: Invalid value: 8081: must match `containerPort` when `hostNetwork` is true"]);
}

#[test]
fn env_names_and_sources_follow_kubes_rules() {
    let env = |env: Value| errors_of(with_container(json!({"env": env})));
    assert_eq!(
        env(json!([{"value": "x"}, {"name": "A=B"}, {"name": "caf\u{e9}"}, {"name": "1ST"}])),
        [
            "spec.containers[0].env[0].name: Required value",
            r#"spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
            r#"spec.containers[0].env[2].name: Invalid value: "café": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
        ]
    );
    assert_eq!(
        env(json!([{"name": "A", "valueFrom": {}}])),
        [r#"spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#]
    );
    assert_eq!(
        env(json!([{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])),
        [r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#]
    );
    assert_eq!(
        env(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Creds", "key": ""}, "configMapKeyRef": {"name": "c", "key": "../k"}}}])),
        [
            r#"spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "../k": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            r#"spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "../k": must not start with '..'"#,
            &format!(r#"spec.containers[0].env[0].valueFrom.secretKeyRef.name: Invalid value: "Creds": {SUBDOMAIN}"#),
            "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",
            r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
        ]
    );
    let from = |env_from: Value| errors_of(with_container(json!({"envFrom": env_from})));
    assert_eq!(from(json!([{"prefix": "P_", "secretRef": {"name": "s-"}}])), Vec::<String>::new(), "a name checked as a prefix");
    assert_eq!(
        from(json!([{"prefix": "A=", "configMapRef": {}}, {}, {"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}])),
        [
            r#"spec.containers[0].envFrom[0].prefix: Invalid value: "A=": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
            "spec.containers[0].envFrom[0].configMapRef.name: Required value",
            r#"spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#,
            r#"spec.containers[0].envFrom: Invalid value: "": may not have more than one field specified at a time"#,
        ]
    );
}

#[test]
fn volumes_and_mounts_follow_kubes_rules() {
    let spec = json!({
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "Bad", "secret": {"secretName": "s"}},
                    {"name": "two", "emptyDir": {}, "configMap": {"name": "c"}, "downwardAPI": {}},
                    // No source: kube's defaults make it an emptyDir before validation.
                    {"name": "none"}, {"emptyDir": {"sizeLimit": "-1Gi"}}],
        "containers": [{"name": "a", "image": "x", "volumeMounts": [
            {"name": "data", "mountPath": "/data"}, {"name": "missing", "mountPath": "/data"}, {"name": "Bad", "mountPath": "/b"}, {"mountPath": ""},
            {"name": "data", "mountPath": "/c", "subPath": "/abs/../x", "subPathExpr": "$(POD)"},
            {"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional", "recursiveReadOnly": "Enabled"},
            {"name": "data", "mountPath": "/e", "mountPropagation": "Sideways", "recursiveReadOnly": "Always"},
        ]}],
    });
    assert_eq!(
        errors_of(spec),
        [
            r#"spec.volumes[1].name: Duplicate value: "data""#,
            &format!(r#"spec.volumes[2].name: Invalid value: "Bad": {LABEL}"#),
            "spec.volumes[3].downwarAPI: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[3].configMap: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[5].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
            "spec.volumes[5].name: Required value",
            r#"spec.containers[0].volumeMounts[1].name: Not found: "missing""#,
            r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#,
            r#"spec.containers[0].volumeMounts[2].name: Not found: "Bad""#,
            "spec.containers[0].volumeMounts[3].name: Required value",
            r#"spec.containers[0].volumeMounts[3].name: Not found: """#,
            "spec.containers[0].volumeMounts[3].mountPath: Required value",
            r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/abs/../x": must be a relative path"#,
            r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/abs/../x": must not contain '..'"#,
            r#"spec.containers[0].volumeMounts[4].subPathExpr: Invalid value: "$(POD)": subPathExpr and subPath are mutually exclusive"#,
            "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
            "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
            "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when mountPropagation is None or not specified",
            r#"spec.containers[0].volumeMounts.mountPropagation: Unsupported value: "Sideways": supported values: "Bidirectional", "HostToContainer", "None""#,
            r#"spec.containers[0].volumeMounts.recursiveReadOnly: Unsupported value: "Always": supported values: "Disabled", "Enabled", "IfPossible""#,
        ]
    );
    let mut privileged = with_container(json!({"securityContext": {"privileged": true}, "volumeMounts": [{"name": "v", "mountPath": "/v", "mountPropagation": "Bidirectional"}]}));
    privileged["volumes"] = json!([{"name": "v", "hostPath": {"path": "/v"}}]);
    assert_eq!(errors_of(privileged), Vec::<String>::new());
}

#[test]
fn requests_stay_within_limits() {
    let resources = |resources: Value| errors_of(with_container(json!({"resources": resources})));
    assert_eq!(
        resources(json!({"requests": {"cpu": "2", "memory": "1.5Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}})),
        [
            r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            r#"spec.containers[0].resources.requests: Invalid value: "1536Mi": must be less than or equal to memory limit of 1Gi"#,
        ]
    );
    // Limits alone are the requests too (the defaults copy them).
    assert_eq!(resources(json!({"limits": {"cpu": "1", "example.com/gpu": "1"}})), Vec::<String>::new());
    assert_eq!(
        resources(json!({"requests": {"cpu": "-100m", "example.com/gpu": "1"}, "limits": {"hugepages-2Mi": "2Mi"}})),
        [
            r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-100m": must be greater than or equal to 0"#,
            "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
        ]
    );
    assert_eq!(
        resources(json!({"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi"}})),
        [
            r#"spec.containers[0].resources.requests: Invalid value: "2Mi": must be equal to hugepages-2Mi limit of 4Mi"#,
            "spec.containers[0].resources: Forbidden: HugePages require cpu or memory",
        ]
    );
}

#[test]
fn pod_fields_follow_kubes_rules() {
    let spec = |extra: Value| {
        let mut spec = with_container(json!({}));
        if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
            spec.extend(extra);
        }
        errors_of(spec)
    };
    assert_eq!(
        spec(json!({"serviceAccountName": "Bot", "nodeName": "node_1", "activeDeadlineSeconds": 0, "hostname": "web.example", "subdomain": "-svc"})),
        [
            format!(r#"spec.serviceAccountName: Invalid value: "Bot": {SUBDOMAIN}"#),
            format!(r#"spec.nodeName: Invalid value: "node_1": {SUBDOMAIN}"#),
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".to_owned(),
            r#"spec.hostname: Invalid value: "web.example": must not contain dots"#.to_owned(),
            format!(r#"spec.subdomain: Invalid value: "-svc": {LABEL}"#),
        ]
    );
    assert_eq!(spec(json!({"activeDeadlineSeconds": 2_147_483_648_i64})), ["spec.activeDeadlineSeconds: Invalid value: 2147483648: must be between 1 and 2147483647, inclusive"]);
    // kube sets no bound on the grace period (a negative one is allowed to become 1 on update).
    assert_eq!(spec(json!({"terminationGracePeriodSeconds": -5})), Vec::<String>::new());
    assert_eq!(spec(json!({"terminationGracePeriodSeconds": "30"})), ["spec.terminationGracePeriodSeconds: Required value"]);
    let mirror = json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "hash"}}, "spec": with_container(json!({}))});
    assert_eq!(
        errors_of_pod(mirror),
        [r#"metadata.annotations[kubernetes.io/config.mirror]: Invalid value: "hash": must set spec.nodeName if mirror pod annotation is set"#]
    );
}

#[test]
fn errors_come_in_kubes_order() {
    let spec = json!({
        "restartPolicy": "Sometimes", "serviceAccountName": "Bot",
        "volumes": [{"name": "Bad_v", "emptyDir": {}}],
        "initContainers": [{"name": "init"}],
        "containers": [{"name": "app", "image": " x", "ports": [{"containerPort": 0}]}, {"name": "app", "image": "y", "volumeMounts": [{"name": "Bad_v", "mountPath": "/v"}]}],
    });
    assert_eq!(
        errors_of(spec),
        [
            format!(r#"spec.volumes[0].name: Invalid value: "Bad_v": {LABEL}"#),
            "spec.containers[0].ports[0].containerPort: Required value".to_owned(),
            r#"spec.containers[1].volumeMounts[0].name: Not found: "Bad_v""#.to_owned(),
            r#"spec.containers[1].name: Duplicate value: "app""#.to_owned(),
            "spec.initContainers[0].image: Required value".to_owned(),
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#.to_owned(),
            format!(r#"spec.serviceAccountName: Invalid value: "Bot": {SUBDOMAIN}"#),
            r#"spec.containers[0].image: Invalid value: " x": must not have leading or trailing whitespace"#.to_owned(),
        ]
    );
}

/// A source that is not an object names no volume type, and is not defaulted away to an
/// emptyDir either (kube's decoder refuses it with a 400; refused here all the same).
#[test]
fn a_source_that_is_not_an_object_is_no_volume_type() {
    let spec = json!({"volumes": [{"name": "v", "secret": "creds"}], "containers": [{"name": "a", "image": "x"}]});
    assert_eq!(errors_of(spec), ["spec.volumes[0]: Required value: must specify a volume type"]);
}

#[test]
fn a_flood_of_list_items_is_answered_with_the_first_thousand_errors() {
    let mounts: Vec<Value> = (0..50_000).map(|_| json!({})).collect();
    let errors = errors_of(with_container(json!({"volumeMounts": mounts})));
    assert_eq!(errors.len(), MAX_ERRORS);
    assert_eq!(errors[0], "spec.containers[0].volumeMounts[0].name: Required value");
}

#[test]
fn no_json_panics_it() {
    let odd = [json!(null), json!(1), json!("x"), json!([]), json!([null]), json!({}), json!([{"a": 1}]), json!(-1), json!(1e300), json!(true)];
    let keys = ["containers", "initContainers", "volumes", "restartPolicy", "dnsPolicy", "dnsConfig", "hostNetwork", "activeDeadlineSeconds", "nodeName"];
    let container_keys = ["name", "image", "ports", "env", "envFrom", "volumeMounts", "resources", "restartPolicy", "livenessProbe"];
    for value in &odd {
        for key in keys {
            let _ = errors_of(json!({key: value}));
        }
        for key in container_keys {
            let _ = errors_of(json!({"containers": [{key: value}], "initContainers": [{key: value}]}));
            let _ = errors_of(json!({"containers": [{"ports": [{key: value, "containerPort": value, "hostPort": value, "name": value, "protocol": value}],
                                                      "env": [{"name": value, "valueFrom": {"secretKeyRef": value, "configMapKeyRef": {"name": value, "key": value}}}],
                                                      "envFrom": [{"prefix": value, "secretRef": value}],
                                                      "volumeMounts": [{"name": value, "mountPath": value, "subPath": value, "mountPropagation": value}],
                                                      "resources": {"limits": {"cpu": "1"}, "requests": value}}],
                                     "volumes": [{"name": value, "emptyDir": value}]}));
        }
    }
}
