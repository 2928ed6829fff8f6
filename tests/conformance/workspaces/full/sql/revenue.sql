select region, sum(amount) as revenue from orders group by region order by region
