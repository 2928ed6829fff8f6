"""The compile-time search for tied join paths (semantic/validate.py).

Within a topic it walks join edges made for the topic's views alone instead of the
model's (which, for views sharing one entity, join every pair). It must find
exactly the ties the search over the model's edges kept to the topic finds: checked
here against that search (``count_join_paths`` with the topic's views allowed, what
validation ran before) on random entity layouts and topics.
"""

from __future__ import annotations

import random

from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.semantic import SemanticModel
from quarry.semantic.errors import SemanticError, SemanticProblem
from quarry.semantic.model import count_join_paths
from quarry.semantic.validate import validate_model


def _view(name: str, entities: list[tuple[str, str]]) -> ViewConfig:
    return ViewConfig.model_validate(
        {
            "name": name,
            "table": name,
            "entities": [
                {"name": entity, "type": side, "key": f"{entity}_id"} for entity, side in entities
            ],
            "dimensions": [
                {"name": k, "type": "number", "expr": k}
                for k in sorted({f"{entity}_id" for entity, _ in entities})
            ],
            "measures": [{"name": "n", "type": "count"}],
        }
    )


def _reference_ties(model: SemanticModel, topic: TopicConfig) -> list[SemanticProblem]:
    """The ties of one topic as found by the search over the model's edges."""
    present = [v for v in topic.views if v in model.views]
    allowed = frozenset(present)
    reported: set[frozenset[str]] = set()
    found = []
    for source in present:
        _, ways, _ = count_join_paths(model, source, allowed)
        for target in sorted(v for v, n in ways.items() if n > 1):
            pair = frozenset((source, target))
            if pair in reported:
                continue
            reported.add(pair)
            try:
                model.join_path(source, target, allowed)
            except SemanticError as exc:
                found.append(SemanticProblem("topic", topic.name, "views", exc.message))
    return found


def _random_model(rng: random.Random) -> SemanticModel:
    entities = [f"e{i}" for i in range(rng.randint(1, 5))]
    views = []
    for i in range(rng.randint(2, 12)):
        declared = [
            (rng.choice(entities), rng.choice(("primary", "foreign", "foreign")))
            for _ in range(rng.randint(1, 4))
        ]
        views.append(_view(f"v{i}", declared))
    names = [v.name for v in views]
    topics = [
        TopicConfig.model_validate(
            {
                "name": f"t{j}",
                "views": rng.sample(names, rng.randint(1, len(names)))
                + (["ghost"] if rng.random() < 0.1 else []),
            }
        )
        for j in range(rng.randint(1, 4))
    ]
    return SemanticModel.from_definitions(views, topics)


def test_topic_ties_match_the_search_over_the_models_edges() -> None:
    rng = random.Random(15)
    tied = 0
    for _ in range(400):
        model = _random_model(rng)
        problems = validate_model(model, None)  # in the order found
        for topic in model.topics.values():
            expected = _reference_ties(model, topic)
            tied += len(expected)
            got = [
                p
                for p in problems
                if p.kind == "topic" and p.name == topic.name and p.field == "views"
                if "join path" in p.message
            ]
            assert got == expected, (topic, [v.entities for v in model.views.values()])
    assert tied > 50  # the layouts do produce ties, so the comparison means something


def test_a_topic_of_two_views_sharing_an_entity_with_many_others_is_checked_alone() -> None:
    """200 views share one primary entity; a topic holds two of them (the generated
    workspace of the compile benchmark): no tie, and the model's 200 edges per
    view are not made for the check (they are made when a query walks them)."""
    views = [_view(f"v{i}", [("customer", "primary")]) for i in range(200)]
    topic = TopicConfig.model_validate({"name": "t", "views": ["v0", "v1"]})
    model = SemanticModel.from_definitions(views, [topic])
    assert model.validate() == []
    assert model._edges == {}
    assert len(model.edges_from("v0")) == 199
    # the same two views joined twice over (two shared entities) are a tie
    twice = [_view(f"w{i}", [("a", "primary"), ("b", "primary")]) for i in range(3)]
    topic = TopicConfig.model_validate({"name": "t", "views": ["w0", "w1"]})
    problems = SemanticModel.from_definitions(twice, [topic]).validate()
    assert [p.field for p in problems] == ["views"]
    assert "ambiguous join path" in problems[0].message
