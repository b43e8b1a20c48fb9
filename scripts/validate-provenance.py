#!/usr/bin/env python3
"""Validates an in-toto statement with a SLSA provenance v1 predicate (FILE) with the
in-toto attestation framework; exit 0 when valid. Run with the interpreter
scripts/install-test-deps.sh installs (imgbuild-test-python3)."""
import json, re, sys
try:
    from google.protobuf import json_format
    from in_toto_attestation.v1.statement import Statement
    from in_toto_attestation.v1.statement_pb2 import Statement as StatementPb
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.predicates.provenance.v1.provenance_pb2 import Provenance
except ImportError as e:
    print(f"cannot import in-toto-attestation ({e}): run scripts/install-test-deps.sh")
    sys.exit(2)

text = open(sys.argv[1]).read()
statement = Statement.copy_from_pb(json_format.Parse(text, StatementPb()))
statement.validate()
if statement.pb.predicate_type != "https://slsa.dev/provenance/v1":
    sys.exit(f"predicateType is {statement.pb.predicate_type}")
prov = json_format.ParseDict(json.loads(text)["predicate"], Provenance())

def check(rd, what):
    ResourceDescriptor.copy_from_pb(rd).validate()
    for alg, value in rd.digest.items():
        if alg == "sha256" and not re.fullmatch("[0-9a-f]{64}", value):
            sys.exit(f"{what}: bad sha256 digest {value!r}")

for i, s in enumerate(statement.pb.subject):
    check(s, f"subject {i}")
if not prov.HasField("build_definition"):
    sys.exit("buildDefinition required")
if prov.build_definition.build_type == "":
    sys.exit("buildType required")
if len(prov.build_definition.external_parameters) == 0:
    sys.exit("externalParameters required")
for i, d in enumerate(prov.build_definition.resolved_dependencies):
    check(d, f"resolvedDependencies {i}")
if not prov.HasField("run_details") or not prov.run_details.HasField("builder"):
    sys.exit("runDetails.builder required")
if prov.run_details.builder.id == "":
    sys.exit("runDetails.builder.id required")
