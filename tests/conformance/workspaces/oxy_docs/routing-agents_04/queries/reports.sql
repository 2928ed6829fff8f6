/* oxy: {database: local} */
select 1
