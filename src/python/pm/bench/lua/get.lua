-- Authenticated GET of one patient: PM_BENCH_TOKEN is the bearer token, PM_BENCH_PATH the path.
package.path = os.getenv("PM_BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

wrk.method = "GET"
wrk.path = os.getenv("PM_BENCH_PATH")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PM_BENCH_TOKEN")
wrk.headers["Accept"] = "application/json"

done = report.done
