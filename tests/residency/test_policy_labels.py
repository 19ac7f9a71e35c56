"""Labels on Python objects: where they live, how they travel, and the guard for `--in` variables."""
from __future__ import annotations

import gc

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import torch

from jupyter_split import policy
from jupyter_split.residency.labels import collect, receive_outputs, variable_origins


def test_tensor_labels_travel_through_a_pickle():
    tensor = policy.label(torch.arange(4.0), "cn")
    assert policy.labels_of(tensor) == {"CN"}
    assert "policy.label() at" in policy.label_origins(tensor)["CN"]
    assert policy.labels_of(cloudpickle.loads(cloudpickle.dumps(tensor))) == {"CN"}


def test_dataframe_labels_live_in_attrs_and_survive_copies_and_pickles():
    frame = policy.label(pd.DataFrame({"phone": ["138", "139"]}), "CN")
    assert policy.labels_of(frame.copy()) == {"CN"}
    assert policy.labels_of(frame.head(1)) == {"CN"}
    assert policy.labels_of(cloudpickle.loads(cloudpickle.dumps(frame))) == {"CN"}


def test_arrays_use_a_weak_registry_that_forgets_dead_objects():
    array = policy.label(np.zeros(3), "CN")
    assert policy.labels_of(array) == {"CN"}
    key = id(array)
    del array
    gc.collect()
    fresh = np.ones(3)
    assert id(fresh) != key or policy.labels_of(fresh) == set()


def test_plain_containers_are_held_and_immutable_values_refused_clearly():
    rows = policy.label([{"name": "x"}], "CN")
    assert policy.labels_of(rows) == {"CN"}
    with pytest.raises(TypeError, match="cannot label a tuple object.*label that"):
        policy.label(("a", "b"), "CN")
    with pytest.raises(ValueError, match="not an ISO 3166"):
        policy.label(np.zeros(1), "China")


def test_labels_are_found_wherever_a_pickle_would_carry_them():
    secret = policy.label(torch.ones(2), "CN")

    class Holder:
        def __init__(self):
            self.inner = {"deep": [secret]}

    model = torch.nn.Linear(2, 2)
    policy.label(model.weight, "CN")
    closure = (lambda s: (lambda: s))(secret)
    assert set(collect({"batch": [(1, secret)]})) == {"CN"}
    assert set(collect(Holder())) == {"CN"}
    assert set(collect(model)) == {"CN"}
    assert set(collect(closure)) == {"CN"}
    assert collect({"plain": [torch.ones(2), np.zeros(2), "text"]}) == {}


def test_delivered_outputs_are_labelled_with_their_parts_and_by_name_when_they_take_no_label():
    values = {"state": {"w": torch.ones(2)}, "name": "Zhang San", "count": 7}
    origins = {"CN": "run r1 read /data/pii/people.csv"}
    receive_outputs(values, {name: origins for name in values})
    assert policy.labels_of(values["state"]) == {"CN"}
    assert policy.labels_of(values["state"]["w"]) == {"CN"}       # a part taken out stays labelled
    assert policy.labels_of(values["name"]) == set()                # a str takes no label...
    assert variable_origins("name", values["name"]) == origins      # ...so its variable carries it
    assert variable_origins("other", values["name"]) == {}


def test_in_variables_refused_abroad_allowed_home_and_audited(home):  # noqa: F811
    tensor = policy.label(torch.ones(3), "CN")
    with pytest.raises(policy.ResidencyError) as info:
        policy.check_objects({"features": tensor, "lr": 0.1, "rows": [tensor]}, "sg")
    message = str(info.value)
    assert "variable 'features'" in message and "variable 'rows'" in message and "'lr'" not in message.split("Nothing")[0]
    assert "site 'sg' (jurisdiction SG)" in message and "%split declassify features rows" in message
    policy.check_objects({"features": tensor}, "home")
    records = policy.audit_entries()
    assert [(r["item"], r["decision"]) for r in records] == [("features", "refused"), ("lr", "allowed"), ("rows", "refused")]
    assert records[0]["bytes"] == 12 and records[0]["kind"] == "variable"


def test_a_declassified_object_passes_and_its_parts_too(home):  # noqa: F811
    tensor = policy.label(torch.ones(3), "CN")
    policy.declassify(tensor, "aggregate statistics, approval 7", name="features")
    policy.check_objects({"features": tensor, "wrapped": {"x": tensor}}, "sg")
    decisions = [(r["decision"], r["item"]) for r in policy.audit_entries()]
    assert decisions == [("declassified", "features"), ("allowed", "features"), ("allowed", "wrapped")]
