"""Sample data for the demo workspace: a small online shop, generated deterministically.

Everything comes from one seeded :class:`random.Random`, dates are computed from fixed
calendar bounds (never from "today"), numbers are written with fixed formats, and the
CSV dialect is pinned, so every call returns the same bytes on every machine. That
matters beyond tidiness: the compiler hashes workspace content, so compiling two
fresh demo workspaces must give the same revision id.

Three files, all with a header row, comma-separated, ``\\n`` line endings:

``customers.csv``
    customer_id, customer_name, region, segment, signup_date
``products.csv``
    product_id, product, category, unit_price
``orders.csv``
    order_id, order_date, customer_id, region, product, category, quantity, unit_price

``orders.csv`` repeats the customer's region and the product's name, category and
price (the price actually paid, sometimes discounted) so that single-table queries
read naturally; the other two files are there for joins.
"""

from __future__ import annotations

import bisect
import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

SEED: Final = 20230101
"""The one seed all demo data derives from. Changing it changes every revision id."""

REGIONS: Final[tuple[str, ...]] = ("North", "South", "East", "West")
"""Sales regions, in the order the workflows and the app list them."""

FIRST_ORDER_DATE: Final = date(2023, 1, 1)
LAST_ORDER_DATE: Final = date(2024, 12, 31)
ORDER_COUNT: Final = 4000
CUSTOMER_COUNT: Final = 400

ORDERS_FILE: Final = "orders.csv"
CUSTOMERS_FILE: Final = "customers.csv"
PRODUCTS_FILE: Final = "products.csv"

_REGION_WEIGHTS: Final = (0.31, 0.19, 0.28, 0.22)
_SEGMENTS: Final = (("Consumer", 0.7), ("Small Business", 0.22), ("Enterprise", 0.08))
_FIRST_SIGNUP: Final = date(2021, 7, 1)
_LAST_SIGNUP: Final = date(2024, 9, 30)

# (product, category, list price, popularity weight)
_CATALOGUE: Final[tuple[tuple[str, str, str, int], ...]] = (
    ("Noise-Cancelling Headphones", "Electronics", "199.00", 6),
    ("Wireless Mouse", "Electronics", "29.99", 14),
    ("USB-C Hub", "Electronics", "49.50", 10),
    ("4K Monitor", "Electronics", "329.00", 4),
    ("Chef's Knife", "Home & Kitchen", "89.00", 7),
    ("Espresso Maker", "Home & Kitchen", "249.00", 3),
    ("Cast Iron Skillet", "Home & Kitchen", "39.95", 9),
    ("Linen Napkins (Set of 4)", "Home & Kitchen", "24.00", 8),
    ("Trail Running Shoes", "Outdoors", "129.00", 7),
    ("Two-Person Tent", "Outdoors", "219.00", 3),
    ("Insulated Water Bottle", "Outdoors", "27.50", 13),
    ("Headlamp", "Outdoors", "34.00", 8),
    ("Data Analysis Handbook", "Books", "45.00", 6),
    ("SQL Pocket Guide", "Books", "19.99", 9),
    ("Mystery Novel", "Books", "14.99", 11),
    ("Cookbook: Weeknight Dinners", "Books", "29.00", 6),
    ("Merino Wool Sweater", "Apparel", "95.00", 6),
    ("Rain Jacket", "Apparel", "139.00", 5),
    ("Cotton T-Shirt", "Apparel", "22.00", 15),
    ("Wool Socks (3 Pairs)", "Apparel", "18.50", 12),
)

# Relative order volume per calendar month: a January lull, a summer bump for the
# outdoors range and the usual November/December peak.
_MONTH_FACTOR: Final = (0.78, 0.82, 0.95, 0.98, 1.02, 1.08, 1.1, 1.0, 0.96, 1.05, 1.38, 1.62)
# Monday..Sunday: weekends a little busier.
_WEEKDAY_FACTOR: Final = (0.95, 0.93, 0.95, 0.98, 1.05, 1.1, 1.04)
_QUANTITY_WEIGHTS: Final = ((1, 55), (2, 25), (3, 11), (4, 6), (5, 3))
_DISCOUNT_RATE: Final = 0.12
_DISCOUNT_PERCENT: Final = 85  # a discounted order pays 85% of list price

_FIRST_NAMES: Final = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farah", "Gus", "Hana", "Ivan", "Jade",
    "Kofi", "Lena", "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq",
    "Uma", "Victor", "Wen", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Abbott", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kim", "Larsen", "Moreau", "Nakamura", "Okafor", "Patel", "Quist",
    "Rossi", "Silva", "Tanaka", "Usman", "Varga", "Weber", "Young", "Zhang",
)  # fmt: skip


@dataclass(frozen=True)
class _Customer:
    customer_id: int
    name: str
    region: str
    segment: str
    signup_date: date


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _customers(rng: random.Random) -> list[_Customer]:
    signup_days = _days(_FIRST_SIGNUP, _LAST_SIGNUP)
    signups = sorted(rng.choice(signup_days) for _ in range(CUSTOMER_COUNT))
    segments = [name for name, _ in _SEGMENTS]
    segment_weights = [weight for _, weight in _SEGMENTS]
    customers = []
    for number, signup in enumerate(signups, start=1):
        name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
        region = rng.choices(REGIONS, weights=_REGION_WEIGHTS)[0]
        segment = rng.choices(segments, weights=segment_weights)[0]
        customers.append(_Customer(number, name, region, segment, signup))
    return customers


def _order_day_weights(days: Sequence[date]) -> list[float]:
    span = (days[-1] - days[0]).days or 1
    weights = []
    for day in days:
        growth = 1.0 + 0.45 * (day - days[0]).days / span  # the shop grows ~45% in 2 years
        weights.append(growth * _MONTH_FACTOR[day.month - 1] * _WEEKDAY_FACTOR[day.weekday()])
    return weights


def _price(text: str) -> int:
    """A decimal price string as integer cents (no floats anywhere near money)."""
    units, _, cents = text.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0"))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def generate_tables(seed: int = SEED) -> dict[str, bytes]:
    """The demo CSV files by file name (``orders.csv`` …), as bytes.

    Pure and deterministic: the same seed gives the same bytes.
    """
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets; must be seeded
    customers = _customers(rng)
    signup_dates = [customer.signup_date for customer in customers]  # sorted by id

    order_days = _days(FIRST_ORDER_DATE, LAST_ORDER_DATE)
    day_weights = _order_day_weights(order_days)
    chosen_days = sorted(rng.choices(order_days, weights=day_weights, k=ORDER_COUNT))
    product_weights = [weight for *_, weight in _CATALOGUE]
    quantities = [quantity for quantity, _ in _QUANTITY_WEIGHTS]
    quantity_weights = [weight for _, weight in _QUANTITY_WEIGHTS]

    order_rows: list[tuple[object, ...]] = []
    for order_id, day in enumerate(chosen_days, start=1):
        # Only customers who had signed up by the order date can place it.
        eligible = max(1, bisect.bisect_right(signup_dates, day))
        customer = customers[rng.randrange(eligible)]
        product, category, list_price, _ = rng.choices(_CATALOGUE, weights=product_weights)[0]
        quantity = rng.choices(quantities, weights=quantity_weights)[0]
        cents = _price(list_price)
        if rng.random() < _DISCOUNT_RATE:
            cents = (cents * _DISCOUNT_PERCENT + 50) // 100
        order_rows.append(
            (
                order_id,
                day.isoformat(),
                customer.customer_id,
                customer.region,
                product,
                category,
                quantity,
                _money(cents),
            )
        )

    return {
        CUSTOMERS_FILE: _csv(
            ("customer_id", "customer_name", "region", "segment", "signup_date"),
            (
                (c.customer_id, c.name, c.region, c.segment, c.signup_date.isoformat())
                for c in customers
            ),
        ),
        PRODUCTS_FILE: _csv(
            ("product_id", "product", "category", "unit_price"),
            (
                (number, product, category, price)
                for number, (product, category, price, _) in enumerate(_CATALOGUE, start=1)
            ),
        ),
        ORDERS_FILE: _csv(
            (
                "order_id",
                "order_date",
                "customer_id",
                "region",
                "product",
                "category",
                "quantity",
                "unit_price",
            ),
            order_rows,
        ),
    }
