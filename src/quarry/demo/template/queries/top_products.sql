-- The ten products that brought in the most revenue, with their share of the total.
SELECT
    product,
    category,
    sum(quantity) AS units,
    round(sum(quantity * unit_price), 2) AS revenue,
    round(100 * sum(quantity * unit_price) / sum(sum(quantity * unit_price)) OVER (), 1)
        AS revenue_share_pct
FROM 'orders.csv'
GROUP BY product, category
ORDER BY revenue DESC
LIMIT 10
