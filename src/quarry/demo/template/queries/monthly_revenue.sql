-- Revenue, orders, units and average order value per calendar month.
SELECT
    strftime(order_date, '%Y-%m') AS month,
    count(*) AS orders,
    sum(quantity) AS units,
    round(sum(quantity * unit_price), 2) AS revenue,
    round(sum(quantity * unit_price) / count(*), 2) AS average_order_value
FROM 'orders.csv'
GROUP BY month
ORDER BY month
