"""The semantic catalog: what a person or an agent may ask for, as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quarry.semantic.model import Member, SemanticModel


def _member(member: Member) -> dict[str, Any]:
    definition = member.definition
    return {
        "name": member.name,
        "qualified_name": member.qualified,
        "view": member.view,
        "kind": member.kind,
        "type": member.type,
        "description": definition.description,
        "synonyms": list(definition.synonyms or []),
        "samples": list(definition.samples or []),
    }


def build_catalog(model: SemanticModel) -> dict[str, Any]:
    """Topics, views and members (``view.member``) with types and descriptions."""
    by_view: dict[str, list[Member]] = {}
    for member in model.members.values():
        by_view.setdefault(member.view, []).append(member)
    views = []
    for view in model.views.values():
        members = by_view.get(view.name, [])
        views.append(
            {
                "name": view.name,
                "label": view.label,
                "description": view.description,
                "datasource": view.datasource,
                "entities": [
                    {"name": e.name, "type": e.type, "description": e.description}
                    for e in view.entities
                ],
                "members": [_member(m) for m in members],
                "segments": [
                    {
                        "name": s.name,
                        "qualified_name": f"{view.name}.{s.name}",
                        "description": s.description,
                    }
                    for s in view.segments
                ],
            }
        )
    topics = [
        {
            "name": topic.name,
            "description": topic.description,
            "views": list(topic.views),
            "base_view": topic.base_view,
            "default_filters": [
                f.model_dump(by_alias=True, exclude_none=True) for f in topic.default_filters or []
            ],
            "row_filtered": bool(topic.security and topic.security.row_filters),
        }
        for topic in model.topics.values()
    ]
    motifs = [
        {"name": m.name, "description": m.description, "outputs": [o.name for o in m.outputs]}
        for m in model.motifs.values()
    ]
    saved = [
        {"name": q.name, "description": q.description, "steps": [s.name for s in q.steps]}
        for q in model.saved_queries.values()
    ]
    return {"topics": topics, "views": views, "motifs": motifs, "saved_queries": saved}
