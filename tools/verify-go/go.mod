module killswitch-verify-go

go 1.22
