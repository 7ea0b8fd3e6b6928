-- login (POST /api/v1/auth/login) with the tenant admin's password (argon2id per call).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"tenant":"%s","username":"admin","password":"%s"}',
   os.getenv("TENANT"), os.getenv("PASSWORD"))
