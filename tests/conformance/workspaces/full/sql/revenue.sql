select region, sum(amount) as revenue from 'orders.csv' group by region order by region
